// Sets local permissions through Hadoop's FileContext with the file system class named in
// argv[0]: `java -cp ... SetPermissions.java CLASS (PATH OCTAL_MODE)...`; prints "missing PATH"
// where setting a mode fails with an IOException (a path that does not exist).
import java.io.IOException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileContext;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.permission.FsPermission;

public class SetPermissions {
  public static void main(String[] args) throws Exception {
    Configuration conf = new Configuration();
    conf.set("fs.AbstractFileSystem.file.impl", args[0]);
    FileContext files = FileContext.getLocalFSFileContext(conf);
    System.out.println("file system: " + files.getDefaultFileSystem().getClass().getName());
    for (int i = 1; i + 1 < args.length; i += 2) {
      try {
        files.setPermission(new Path(args[i]), new FsPermission(Short.parseShort(args[i + 1], 8)));
      } catch (IOException e) {
        System.out.println("missing " + args[i]);
      }
    }
  }
}
